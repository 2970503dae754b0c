"""Chinese names for customers and staff: surnames weighted by frequency, given names by gender."""

from __future__ import annotations

import itertools
from random import Random

# The most common surnames, most frequent first, with pinyin for staff WeCom user ids.
SURNAMES: list[tuple[str, str]] = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"),
    ("林", "lin"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
    ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"),
    ("彭", "peng"), ("曾", "zeng"), ("肖", "xiao"), ("田", "tian"), ("董", "dong"), ("袁", "yuan"),
    ("潘", "pan"), ("蒋", "jiang"), ("蔡", "cai"), ("余", "yu"), ("杜", "du"), ("叶", "ye"),
    ("程", "cheng"), ("苏", "su"), ("魏", "wei"), ("吕", "lyu"), ("丁", "ding"), ("沈", "shen"),
    ("姚", "yao"), ("卢", "lu"), ("姜", "jiang"), ("崔", "cui"), ("钟", "zhong"), ("谭", "tan"),
    ("陆", "lu"), ("汪", "wang"), ("范", "fan"), ("金", "jin"), ("石", "shi"), ("廖", "liao"),
]  # fmt: skip
# Zipf-like weights: the few top surnames cover a large share of people, as in China.
SURNAME_CUM_WEIGHTS: list[float] = list(itertools.accumulate(1.0 / (i + 3) for i in range(len(SURNAMES))))

FEMALE_GIVEN: list[tuple[str, str]] = [
    ("静", "jing"), ("婷", "ting"), ("敏", "min"), ("丽", "li"), ("娜", "na"), ("芳", "fang"),
    ("雪", "xue"), ("琳", "lin"), ("颖", "ying"), ("倩", "qian"), ("璐", "lu"), ("洁", "jie"),
    ("欣怡", "xinyi"), ("子涵", "zihan"), ("雨萱", "yuxuan"), ("思琪", "siqi"), ("佳怡", "jiayi"),
    ("晓雯", "xiaowen"), ("雅婷", "yating"), ("梦瑶", "mengyao"), ("可欣", "kexin"), ("诗涵", "shihan"),
    ("若曦", "ruoxi"), ("婉清", "wanqing"), ("美琪", "meiqi"), ("心怡", "xinyi"), ("晨曦", "chenxi"),
    ("一诺", "yinuo"), ("嘉琪", "jiaqi"), ("慧敏", "huimin"), ("丹妮", "danni"), ("文静", "wenjing"),
    ("舒婷", "shuting"), ("月华", "yuehua"), ("秀英", "xiuying"), ("玉兰", "yulan"), ("海燕", "haiyan"),
    ("雨桐", "yutong"), ("紫萱", "zixuan"), ("安琪", "anqi"), ("思雨", "siyu"), ("梓萱", "zixuan"),
]  # fmt: skip
MALE_GIVEN: list[tuple[str, str]] = [
    ("浩", "hao"), ("杰", "jie"), ("磊", "lei"), ("伟", "wei"), ("强", "qiang"), ("明", "ming"),
    ("俊杰", "junjie"), ("子轩", "zixuan"), ("宇航", "yuhang"), ("浩然", "haoran"), ("博文", "bowen"),
    ("思远", "siyuan"), ("家豪", "jiahao"), ("天佑", "tianyou"), ("建国", "jianguo"), ("志强", "zhiqiang"),
]  # fmt: skip


def surname(rng: Random) -> tuple[str, str]:
    """A surname (characters, pinyin) drawn by frequency."""
    return rng.choices(SURNAMES, cum_weights=SURNAME_CUM_WEIGHTS)[0]


def given_name(rng: Random, gender: str) -> tuple[str, str]:
    """A given name (characters, pinyin) for gender 'female' or 'male'."""
    return rng.choice(FEMALE_GIVEN if gender == "female" else MALE_GIVEN)


def full_name(rng: Random, gender: str) -> str:
    """A Chinese full name, surname first."""
    return surname(rng)[0] + given_name(rng, gender)[0]
