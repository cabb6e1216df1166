"""Synthetic loyalty-programme members for ``memberguard demo`` and the benchmarks.

Nobody in this data exists. Names are random surname + given-name draws, phone numbers and email
addresses come from keyed permutations of the member's position in the run, and resident ID
numbers are merely *well-formed*: a real region code, the member's birthday, a sequence digit
matching the gender and a correct GB 11643 check character. The point is data that exercises the
whole stack (phone normalisation, blind indexes, ID validation, masking views, consent rules) the
way a real programme's data would, with no real person in it.

Generation is deterministic for a seed, pure Python and stdlib ``random`` only, fast enough for a
million members, and prefix-stable: ``generate_members(10)`` yields exactly the first ten members
of ``generate_members(1_000_000)``, because nothing drawn for member *i* depends on ``n``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple, TypeVar

from vault.fields import gb11643_check_digit

DEFAULT_SEED = 20261122
_T = TypeVar("_T")

# Phones are unique because their last 8 digits are a bijection of the member's index over
# 10**8 values, and email tokens cover 99,990,000 indexes (see _EmailTokens). The cap stays
# well inside both and far above any demo.
MAX_MEMBERS = 50_000_000

# --------------------------------------------------------------------------------------------
# Tables. Each is a compact text block parsed once at import, so it reads like the data it is.
# --------------------------------------------------------------------------------------------

# Surname, pinyin, relative frequency (roughly per 10,000 people, after the 2020 census lists).
_SURNAME_TABLE = """
王 wang 725   李 li 719     张 zhang 683  刘 liu 538    陈 chen 461   杨 yang 308
黄 huang 223  赵 zhao 223   吴 wu 205     周 zhou 205   徐 xu 167     孙 sun 154
马 ma 146     朱 zhu 125    胡 hu 119     郭 guo 118    何 he 117     高 gao 114
林 lin 111    罗 luo 94     郑 zheng 93   梁 liang 89   谢 xie 85     宋 song 80
唐 tang 79    许 xu 75      韩 han 74     冯 feng 72    邓 deng 71    曹 cao 69
彭 peng 68    曾 zeng 66    肖 xiao 64    田 tian 62    董 dong 61    袁 yuan 58
潘 pan 57     于 yu 56      蒋 jiang 55   蔡 cai 54     余 yu 53      杜 du 52
叶 ye 51      程 cheng 50   苏 su 49      魏 wei 48     吕 lv 47      丁 ding 46
任 ren 45     沈 shen 44    姚 yao 43     卢 lu 42      姜 jiang 41   崔 cui 40
钟 zhong 39   谭 tan 38     陆 lu 37      汪 wang 36    范 fan 35     金 jin 34
石 shi 33     廖 liao 32    贾 jia 31     夏 xia 30     韦 wei 29     付 fu 28
方 fang 27    白 bai 26     邹 zou 25     孟 meng 24    熊 xiong 23   秦 qin 22
邱 qiu 21     江 jiang 20   尹 yin 19     薛 xue 18     闫 yan 17     段 duan 16
雷 lei 15     侯 hou 15     龙 long 14    史 shi 14     陶 tao 13     黎 li 13
贺 he 12      顾 gu 12      毛 mao 12     郝 hao 11     龚 gong 11    邵 shao 11
万 wan 10     钱 qian 10    严 yan 10     覃 qin 9      武 wu 9       戴 dai 9
欧阳 ouyang 3   司马 sima 1   上官 shangguan 1   诸葛 zhuge 1
"""

# Given-name characters with pinyin, split by the gender they are usually given to, so that a
# member's name agrees with their gender field the way it does in real data.
_GIVEN_MALE = """
伟wei 强qiang 磊lei 军jun 勇yong 杰jie 涛tao 超chao 刚gang 辉hui 建jian 国guo 鹏peng 飞fei
鑫xin 浩hao 俊jun 凯kai 帅shuai 峰feng 亮liang 成cheng 龙long 志zhi 斌bin 波bo 海hai 东dong
兵bing 彬bin 宏hong 坤kun 博bo 豪hao 睿rui 轩xuan 哲zhe 锋feng 健jian 毅yi 威wei 松song
洪hong 振zhen 翔xiang 泽ze 皓hao 铭ming 航hang 旭xu 诚cheng 钢gang 德de 光guang 庆qing 伦lun
力li 武wu 胜sheng 荣rong 良liang 鸣ming
"""
_GIVEN_FEMALE = """
芳fang 娜na 敏min 静jing 丽li 艳yan 娟juan 秀xiu 霞xia 英ying 玉yu 兰lan 红hong 梅mei
琳lin 丹dan 雪xue 婷ting 慧hui 倩qian 琪qi 萍ping 燕yan 玲ling 莉li 洁jie 蓉rong 菲fei
薇wei 琴qin 云yun 莹ying 露lu 瑶yao 璐lu 婉wan 娇jiao 晶jing 妍yan 悦yue 欢huan 萱xuan
媛yuan 月yue 琼qiong 凤feng 春chun 虹hong 珊shan 彩cai 桂gui 诗shi 梦meng 颖ying 怡yi 淑shu
惠hui 爽shuang 雯wen 雅ya 馨xin
"""
_GIVEN_NEUTRAL = """
文wen 华hua 平ping 明ming 宇yu 晨chen 阳yang 欣xin 佳jia 嘉jia 思si 晓xiao 子zi 一yi
雨yu 林lin 涵han 安an 乐le 心xin 金jin 家jia 天tian 新xin 清qing 立li 小xiao 元yuan
可ke 宁ning 永yong 青qing 瑞rui
"""

# Where members live. A top-level line is a municipality (store code, store count, districts)
# or a province header; indented lines are that province's prefecture-level cities. Districts
# carry their GB/T 2260 code, which becomes the first six digits of the member's ID number.
# Store counts double as the weight for drawing a member's city: members cluster where the
# brand has shops, as they would in a real programme.
_PLACE_TABLE = """
北京市 BJ 60 东城区110101 西城区110102 朝阳区110105 海淀区110108 丰台区110106
上海市 SH 60 黄浦区310101 徐汇区310104 长宁区310105 浦东新区310115 闵行区310112
天津市 TJ 20 和平区120101 河西区120103 南开区120104 滨海新区120116
重庆市 CQ 25 渝中区500103 江北区500105 沙坪坝区500106 渝北区500112
广东省
  广州市 GZ 45 天河区440106 越秀区440104 海珠区440105
  深圳市 SZ 45 南山区440305 福田区440304 罗湖区440303 宝安区440306
  佛山市 FS 15 禅城区440604 南海区440605 顺德区440606
  珠海市 ZH 8 香洲区440402
浙江省
  杭州市 HZ 35 西湖区330106 上城区330102 滨江区330108
  宁波市 NB 15 鄞州区330212 海曙区330203
  温州市 WZ 10 鹿城区330302
  绍兴市 SX 6 越城区330602
江苏省
  南京市 NJ 30 玄武区320102 鼓楼区320106
  苏州市 SU 25 姑苏区320508 吴中区320506 虎丘区320505
  无锡市 WX 12 梁溪区320213 新吴区320214
  常州市 CZ 8 天宁区320402
山东省
  济南市 JN 15 历下区370102 市中区370103
  青岛市 QD 18 市南区370202 崂山区370212
  烟台市 YT 6 芝罘区370602
  潍坊市 WF 5 潍城区370702
河南省
  郑州市 ZZ 18 金水区410105 中原区410102
  洛阳市 LY 6 涧西区410305
  南阳市 NY 4 宛城区411302
四川省
  成都市 CD 35 锦江区510104 青羊区510105 武侯区510107
  绵阳市 MY 5 涪城区510703
  宜宾市 YB 4 翠屏区511502
湖北省
  武汉市 WH 30 武昌区420106 江岸区420102 洪山区420111
  宜昌市 YG 5 西陵区420502
  襄阳市 XY 4 樊城区420606
湖南省
  长沙市 CS 20 芙蓉区430102 岳麓区430104 天心区430103
  株洲市 ZU 4 荷塘区430202
  湘潭市 XT 3 雨湖区430302
河北省
  石家庄市 SJ 10 长安区130102 桥西区130104
  唐山市 TS 6 路南区130202 路北区130203
  保定市 BD 4 竞秀区130602
福建省
  福州市 FZ 12 鼓楼区350102 台江区350103
  厦门市 XM 14 思明区350203 湖里区350206
  泉州市 QZ 6 鲤城区350502
安徽省
  合肥市 HF 15 蜀山区340104 庐阳区340103
  芜湖市 WU 5 镜湖区340202
  蚌埠市 BB 3 龙子湖区340302
陕西省
  西安市 XA 22 雁塔区610113 碑林区610103 莲湖区610104
  宝鸡市 BA 3 渭滨区610302
辽宁省
  沈阳市 SY 14 和平区210102 沈河区210103
  大连市 DL 12 中山区210202 西岗区210203
  鞍山市 AS 3 铁东区210302
江西省
  南昌市 NC 10 东湖区360102 西湖区360103
  赣州市 GA 4 章贡区360702
  九江市 JJ 3 濂溪区360402
云南省
  昆明市 KM 14 五华区530102 盘龙区530103
  曲靖市 QJ 3 麒麟区530302
  玉溪市 YX 2 红塔区530402
广西壮族自治区
  南宁市 NN 10 青秀区450103 兴宁区450102
  柳州市 LU 4 城中区450202
  桂林市 GL 4 秀峰区450302 七星区450305
山西省
  太原市 TY 9 小店区140105 迎泽区140106
  大同市 DT 3 平城区140213
黑龙江省
  哈尔滨市 HB 10 道里区230102 南岗区230103
  大庆市 DQ 3 萨尔图区230602
  齐齐哈尔市 QH 2 龙沙区230202
吉林省
  长春市 CC 8 南关区220102 朝阳区220104
  吉林市 JL 3 昌邑区220202
贵州省
  贵阳市 GY 8 南明区520102 云岩区520103
  遵义市 ZY 3 红花岗区520302
甘肃省
  兰州市 LZ 6 城关区620102 七里河区620103
  天水市 TI 2 秦州区620502
内蒙古自治区
  呼和浩特市 HH 5 新城区150102 赛罕区150105
  包头市 BT 4 昆都仑区150203
新疆维吾尔自治区
  乌鲁木齐市 WL 6 天山区650102 新市区650104
  克拉玛依市 KL 2 克拉玛依区650203
海南省
  海口市 HK 6 龙华区460106 美兰区460108
  三亚市 SA 5 吉阳区460203
宁夏回族自治区
  银川市 YC 4 兴庆区640104 金凤区640106
  石嘴山市 SS 1 大武口区640202
青海省
  西宁市 XN 3 城东区630102 城西区630104
  海东市 HD 1 乐都区630202
"""

# Street names found in nearly every Chinese city, so any of them is plausible anywhere.
_STREETS = [
    "人民路",
    "中山路",
    "解放路",
    "建设路",
    "和平路",
    "新华路",
    "文化路",
    "胜利路",
    "长江路",
    "黄河路",
    "青年路",
    "光明路",
    "幸福路",
    "朝阳路",
    "东风路",
    "五一路",
    "北京路",
    "南京路",
    "滨江路",
    "学府路",
    "科技路",
    "花园路",
    "团结路",
    "友谊路",
    "育才路",
    "健康路",
    "府前街",
    "金融街",
    "工业大道",
    "世纪大道",
    "迎宾大道",
    "环城路",
    "湖滨路",
    "体育路",
    "公园路",
    "新民街",
]

# Mobile prefixes with a rough share of subscribers per prefix (older, larger ranges dominate).
# Every prefix here is valid for all 10**8 suffixes in libphonenumber's CN mobile pattern.
_PHONE_PREFIX_TABLE = """
130 4 131 4 132 4 133 4 134 4 135 6 136 6 137 6 138 8 139 8
150 4 151 4 152 3 153 3 155 3 156 3 157 3 158 4 159 4 166 2
170 1 171 1 172 1 173 2 175 2 176 2 177 2 178 2
180 3 181 3 182 3 183 3 184 1 185 3 186 4 187 4 188 4 189 4 191 2 198 2 199 2
"""

# Email providers by rough share among Chinese consumers. 139.com is China Mobile's mailbox,
# whose address is the phone number itself.
_EMAIL_DOMAIN_TABLE = """
qq.com 34 163.com 22 126.com 9 gmail.com 7 outlook.com 8 foxmail.com 6 sina.com 6
139.com 3 sohu.com 2
"""

TIERS = ("普通", "银卡", "金卡", "钻石")
GENDERS = ("男", "女", "未知")
CHANNELS = ("app", "pos", "web", "wechat", "mini_program")

# Channel shares at sign-up. WeChat mini programs launched on 2017-01-09, so earlier sign-ups
# that draw mini_program are recorded as wechat instead.
_CHANNEL_WEIGHTS = {"app": 30, "mini_program": 25, "wechat": 20, "pos": 18, "web": 7}
_MINI_PROGRAM_LAUNCH = date(2017, 1, 9).toordinal()

# Share of members per birth decade: a retail loyalty programme skews to people in their
# twenties to forties, with a long tail of older members.
_BIRTH_BANDS = (
    (1950, 1959, 3),
    (1960, 1969, 8),
    (1970, 1979, 15),
    (1980, 1989, 27),
    (1990, 1999, 32),
    (2000, 2007, 15),
)

_REGISTRATION_START = date(2015, 1, 1).toordinal()
_REGISTRATION_END = date(2026, 11, 1).toordinal()

# Tier pyramid (cumulative upper bounds for one uniform draw) and the points-balance range of
# each tier: points are earned by spending, so higher tiers hold more of them.
_TIER_CUTS = (0.60, 0.85, 0.97)
_POINTS_RANGE = {
    "普通": (0, 3_000),
    "银卡": (1_000, 15_000),
    "金卡": (5_000, 60_000),
    "钻石": (20_000, 300_000),
}


class Place(NamedTuple):
    """One prefecture-level city (or municipality) members can live in."""

    province: str  # ends in 省 or 自治区, or is the municipality itself (北京市)
    city: str  # ends in 市; empty for a municipality, whose districts follow it directly
    store_code: str  # two capital letters, the prefix of the city's store codes
    stores: int
    districts: tuple[tuple[str, str], ...]  # (district name, GB/T 2260 code)


def _parse_places(text: str) -> tuple[Place, ...]:
    places: list[Place] = []
    province = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) == 1:
            province = fields[0]
            continue
        name, code, stores, *districts = fields
        parsed = tuple((d[:-6], d[-6:]) for d in districts)
        if line[0].isspace():
            places.append(Place(province, name, code, int(stores), parsed))
        else:
            places.append(Place(name, "", code, int(stores), parsed))
    return tuple(places)


def _parse_words(text: str) -> list[tuple[str, str, int]]:
    """Tokens like "王 wang 725" or "伟wei": (characters, pinyin, weight, default 1)."""
    found = re.findall(r"([\u4e00-\u9fff]+)\s*([a-z]+)\s*(\d*)", text)
    return [(chars, pinyin, int(weight or 1)) for chars, pinyin, weight in found]


def _parse_pairs(text: str) -> list[tuple[str, int]]:
    """Whitespace-separated "name weight" pairs."""
    words = text.split()
    return [(words[k], int(words[k + 1])) for k in range(0, len(words), 2)]


def _expand(pairs: list[tuple[_T, int]]) -> list[_T]:
    """Repeat each item by its integer weight, so that a uniform index into the result draws
    by weight: several times faster per draw than ``random.choices``."""
    return [item for item, weight in pairs for _ in range(weight)]


PLACES = _parse_places(_PLACE_TABLE)
PROVINCES = frozenset(p.province for p in PLACES)
MUNICIPALITIES = frozenset(p.province for p in PLACES if not p.city)
SURNAMES = tuple(chars for chars, _, _ in _parse_words(_SURNAME_TABLE))
GIVEN_NAME_CHARACTERS = frozenset(
    chars
    for table in (_GIVEN_MALE, _GIVEN_FEMALE, _GIVEN_NEUTRAL)
    for chars, _, _ in _parse_words(table)
)
PHONE_PREFIXES = tuple(prefix for prefix, _ in _parse_pairs(_PHONE_PREFIX_TABLE))
EMAIL_DOMAINS = tuple(domain for domain, _ in _parse_pairs(_EMAIL_DOMAIN_TABLE))

_SURNAME_POOL = _expand([((c, p), w) for c, p, w in _parse_words(_SURNAME_TABLE)])
_MALE, _FEMALE, _NEUTRAL = (
    [(c, p) for c, p, _ in _parse_words(t)] for t in (_GIVEN_MALE, _GIVEN_FEMALE, _GIVEN_NEUTRAL)
)
# Gendered characters twice as likely as neutral ones; 未知 members draw from everything.
_GIVEN_POOLS = {
    "男": _MALE * 2 + _NEUTRAL,
    "女": _FEMALE * 2 + _NEUTRAL,
    "未知": _MALE + _FEMALE + _NEUTRAL,
}
_PLACE_POOL = _expand([(i, p.stores) for i, p in enumerate(PLACES)])
# Per place, per district: (address prefix, region code), built once rather than per member.
_ADDRESS_PREFIXES = [
    [(p.province + p.city + district, code) for district, code in p.districts] for p in PLACES
]
_PHONE_PREFIX_POOL = _expand(_parse_pairs(_PHONE_PREFIX_TABLE))
_DOMAIN_POOL = _expand(_parse_pairs(_EMAIL_DOMAIN_TABLE))
_CHANNEL_POOL = _expand(list(_CHANNEL_WEIGHTS.items()))
# Weight per birth year, in hundredths of a percent, spread evenly over each decade band.
_BIRTH_YEAR_POOL = _expand(
    [
        (year, round(share * 100 / (last - first + 1)))
        for first, last, share in _BIRTH_BANDS
        for year in range(first, last + 1)
    ]
)
# (first day's ordinal, number of days) per birth year, so a birthday costs one draw.
_YEAR_DAYS = {
    y: (date(y, 1, 1).toordinal(), date(y + 1, 1, 1).toordinal() - date(y, 1, 1).toordinal())
    for y in range(_BIRTH_BANDS[0][0], _BIRTH_BANDS[-1][1] + 1)
}
_FIRST_BIRTH_ORDINAL = date(_BIRTH_BANDS[0][0], 1, 1).toordinal()


class _Feistel:
    """A keyed bijection on ``range(a * b)``: a four-round Feistel network on the pair
    (x // b, x % b). Any round function gives a bijection, so random tables suffice. It turns
    the member index into unique values that look random instead of counting up."""

    def __init__(self, a: int, b: int, rng: random.Random) -> None:
        self.a, self.b = a, b
        rnd = rng.random
        # Round keys: one table indexed by the right half for each round; halves alternate
        # between the two radices, so the tables alternate in size too.
        self.k1 = [int(rnd() * a) for _ in range(b)]
        self.k2 = [int(rnd() * b) for _ in range(a)]
        self.k3 = [int(rnd() * a) for _ in range(b)]
        self.k4 = [int(rnd() * b) for _ in range(a)]

    def __call__(self, x: int) -> int:
        a, b = self.a, self.b
        left, right = divmod(x, b)  # left < a, right < b
        left, right = right, (left + self.k1[right]) % a  # left < b, right < a
        left, right = right, (left + self.k2[right]) % b  # left < a, right < b
        left, right = right, (left + self.k3[right]) % a
        left, right = right, (left + self.k4[right]) % b
        return left * b + right


class _EmailTokens:
    """A unique number per member index, used as the digit tail of every email local part.

    Indexes are taken in bands: the first 90,000 get 5-digit tokens (10000-99999), the next
    900,000 get 6-digit ones, and so on, each band shuffled by its own Feistel permutation.
    Within a band tokens are distinct, and across bands their lengths differ, so no two members
    ever share a token, while a demo-sized run gets short, natural-looking numbers."""

    # (first index, a, b): band k covers a * b == 9 * 10**(4 + k) indexes.
    _BANDS = (
        (0, 300, 300),
        (90_000, 900, 1_000),
        (990_000, 3_000, 3_000),
        (9_990_000, 9_000, 10_000),
    )

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._perms: dict[int, _Feistel] = {}  # built lazily: a 10k run needs only band 0

    def __call__(self, index: int) -> int:
        for band in range(len(self._BANDS) - 1, -1, -1):
            start, a, b = self._BANDS[band]
            if index >= start:
                break
        if index - start >= a * b:
            raise ValueError("member index beyond the email token space")
        perm = self._perms.get(band)
        if perm is None:
            perm = self._perms[band] = _Feistel(a, b, random.Random(f"{self._seed}/email/{band}"))
        return 10 ** (4 + band) + perm(index - start)


def _email(
    token: int, phone: str, surname: str, given: tuple[str, str], rnd: Callable[[], float]
) -> str:
    """A lower-case address whose local part ends in the member's unique ``token``.

    Letter-based local parts end in a letter before the token, and numeric QQ-style ones are a
    fixed 3-digit head plus the token, so the token can be read back from every local part:
    distinct tokens make distinct addresses. 139.com addresses use the (unique) phone number.
    ``given`` is the pinyin of the one or two given-name characters ("" for a missing second).
    """
    domain = _DOMAIN_POOL[int(rnd() * len(_DOMAIN_POOL))]
    if domain == "139.com":
        return f"{phone}@139.com"
    if domain in ("qq.com", "foxmail.com") and rnd() < 0.6:
        return f"{100 + int(rnd() * 900)}{token}@{domain}"  # QQ numbers double as addresses
    style = rnd()
    if style < 0.45:
        local = surname + given[0] + given[1]  # zhangwei
    elif style < 0.65:
        local = surname[0] + given[0][0] + given[1][:1]  # zw
    elif style < 0.85:
        local = f"{given[0]}{given[1]}.{surname}"  # wei.zhang
    else:
        local = f"{surname}_{given[0]}{given[1]}"  # zhang_wei
    return f"{local}{token}@{domain}"


def generate_members(n: int, *, seed: int = DEFAULT_SEED) -> Iterator[dict[str, object]]:
    """Yield ``n`` synthetic members, deterministically for ``seed``.

    Each member is a dict with the keys name, phone, email (about 70% of members; the key is
    absent otherwise), birthday, gender, address, id_number, tier, points_balance,
    registered_at, channel and home_store. Phones, emails and ID numbers are unique within one
    call. Raises ``ValueError`` at once (not on first ``next``) for ``n`` outside
    ``0..MAX_MEMBERS``.
    """
    if not 0 <= n <= MAX_MEMBERS:
        raise ValueError(f"n must be between 0 and {MAX_MEMBERS}")
    return _generate(n, seed)


def _generate(n: int, seed: int) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    rnd = rng.random  # bound once: the loop below makes ~25 draws per member
    # The permutations get their own seed-derived streams, so building them (lazily, for
    # emails) never shifts the member stream and runs of different n stay prefix-stable.
    phone_suffix = _Feistel(10_000, 10_000, random.Random(f"{seed}/phone"))
    email_token = _EmailTokens(seed)
    # Region code + birthday + sequence must not repeat: two members sharing an ID number
    # would be unrealistic. Collisions are rare, so redrawing is cheap; the set holds one int
    # per member (tens of MB at a million, nothing at demo size).
    used_ids: set[int] = set()
    fromordinal = date.fromordinal
    n_surnames, n_places = len(_SURNAME_POOL), len(_PLACE_POOL)
    n_prefixes, n_years = len(_PHONE_PREFIX_POOL), len(_BIRTH_YEAR_POOL)
    n_streets, n_channels = len(_STREETS), len(_CHANNEL_POOL)
    tier_silver, tier_gold, tier_diamond = _TIER_CUTS

    for i in range(n):
        g = rnd()
        gender = "男" if g < 0.49 else "女" if g < 0.98 else "未知"

        year = _BIRTH_YEAR_POOL[int(rnd() * n_years)]
        first_day, days = _YEAR_DAYS[year]
        born_ordinal = first_day + int(rnd() * days)
        born = fromordinal(born_ordinal)
        birthday = born.isoformat()

        surname, surname_py = _SURNAME_POOL[int(rnd() * n_surnames)]
        pool = _GIVEN_POOLS[gender]
        c1, p1 = pool[int(rnd() * len(pool))]
        # Single-character given names were far more common for people born before ~1975.
        if rnd() < (0.40 if year < 1975 else 0.18):
            c2 = p2 = ""
        else:
            c2, p2 = pool[int(rnd() * len(pool))]

        phone = f"{_PHONE_PREFIX_POOL[int(rnd() * n_prefixes)]}{phone_suffix(i):08d}"

        place_index = _PLACE_POOL[int(rnd() * n_places)]
        place = PLACES[place_index]
        districts = _ADDRESS_PREFIXES[place_index]
        address_prefix, region = districts[int(rnd() * len(districts))]
        # House numbers: mostly small, occasionally in the hundreds.
        house = 1 + int(rnd() * rnd() * 800)
        address = f"{address_prefix}{_STREETS[int(rnd() * n_streets)]}{house}号"

        # ID sequence: two free digits, then one whose parity is the gender (odd for men).
        if gender == "男":
            parity = 1
        elif gender == "女":
            parity = 0
        else:
            parity = int(rnd() * 2)  # 未知 is what the member declared; the ID still has one
        region_number = int(region)
        while True:
            sequence = int(rnd() * 100) * 10 + 2 * int(rnd() * 5) + parity
            key = (region_number * 25_000 + born_ordinal - _FIRST_BIRTH_ORDINAL) * 1000 + sequence
            if key not in used_ids:
                used_ids.add(key)
                break
        first17 = f"{region}{birthday[0:4]}{birthday[5:7]}{birthday[8:10]}{sequence:03d}"
        id_number = first17 + gb11643_check_digit(first17)

        t = rnd()
        tier = (
            "普通"
            if t < tier_silver
            else "银卡"
            if t < tier_gold
            else "金卡"
            if t < tier_diamond
            else "钻石"
        )
        low, high = _POINTS_RANGE[tier]
        u = rnd()
        # Squared draw: most balances sit near the bottom of the tier's range; some basic
        # members have spent everything.
        points = 0 if tier == "普通" and u < 0.15 else low + int((high - low) * u * u)

        # Sign-ups grow over the years (max of two draws skews late), never before the
        # member turned 16 (a 29 February birthday counts from 1 March).
        try:
            sixteen = born.replace(year=year + 16).toordinal()
        except ValueError:
            sixteen = date(year + 16, 3, 1).toordinal()
        earliest = max(_REGISTRATION_START, sixteen)
        registered = earliest + int(max(rnd(), rnd()) * (_REGISTRATION_END - earliest + 1))

        channel = _CHANNEL_POOL[int(rnd() * n_channels)]
        if channel == "mini_program" and registered < _MINI_PROGRAM_LAUNCH:
            channel = "wechat"

        member: dict[str, object] = {"name": surname + c1 + c2, "phone": phone}
        if rnd() < 0.70:
            member["email"] = _email(email_token(i), phone, surname_py, (p1, p2), rnd)
        member["birthday"] = birthday
        member["gender"] = gender
        member["address"] = address
        member["id_number"] = id_number
        member["tier"] = tier
        member["points_balance"] = points
        member["registered_at"] = fromordinal(registered).isoformat()
        member["channel"] = channel
        member["home_store"] = f"{place.store_code}-{1 + int(rnd() * place.stores):03d}"
        yield member


# --------------------------------------------------------------------------------------------
# Consents
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentPlan:
    """The consent state a demo member ends up in for one purpose.

    ``status`` is the member's *current* state: "granted", "refused" or "withdrawn" (a
    withdrawal implies an earlier grant, which a seeder may record first for a realistic
    history). Plans are per purpose, so separate-consent purposes (partner_sharing,
    identity_verification) are never bundled with others when recorded one by one.
    """

    purpose: str
    status: str
    channel: str


# Purpose: (P(granted), P(refused), P(withdrawn)); the rest were never asked and get no plan.
# Marketing and personalisation are popular opt-ins; giving data to partners and handing over
# an ID number are rare, and withdrawals cluster on marketing messages.
CONSENT_MIX: Mapping[str, tuple[float, float, float]] = {
    "marketing_sms": (0.55, 0.20, 0.08),
    "marketing_email": (0.40, 0.20, 0.06),
    "birthday_benefits": (0.65, 0.10, 0.03),
    "personalization": (0.45, 0.15, 0.05),
    "analytics": (0.50, 0.15, 0.04),
    "partner_sharing": (0.08, 0.30, 0.02),
    "identity_verification": (0.05, 0.05, 0.01),
}
CONSENT_PURPOSES = tuple(CONSENT_MIX)


def plan_consents(member: Mapping[str, object], rng: random.Random) -> list[ConsentPlan]:
    """A realistic set of consent plans for ``member``, in ``CONSENT_PURPOSES`` order.

    Purposes without a plan have no consent at all. ``marketing_email`` is planned only for
    members with an email address. The channel is mostly the member's own sign-up channel:
    consents are usually collected in the flow where the member signed up.
    """
    rnd = rng.random
    own = member.get("channel")
    own_channel = own if isinstance(own, str) and own in CHANNELS else "app"
    plans: list[ConsentPlan] = []
    for purpose, (granted, refused, withdrawn) in CONSENT_MIX.items():
        if purpose == "marketing_email" and not member.get("email"):
            continue
        u = rnd()
        if u < granted:
            status = "granted"
        elif u < granted + refused:
            status = "refused"
        elif u < granted + refused + withdrawn:
            status = "withdrawn"
        else:
            continue
        channel = own_channel if rnd() < 0.85 else CHANNELS[int(rnd() * len(CHANNELS))]
        plans.append(ConsentPlan(purpose, status, channel))
    return plans
